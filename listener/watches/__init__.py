"""Watches: the query language (`query`), matching items against many queries at once
(`matcher`), where matched terms occur (`highlight`), and spike detection (`spikes`). Pure."""
