"""Emails from values: the digest (`digest`), a spike alert (`alert`), the watch sections
they share (`watch`), and the pieces all of them use (`parts`), through the Jinja2 templates
of `templates/`. Pure apart from reading those templates; the only place that converts times
to the reader's zone."""
