"""A feed's bytes to items: fetch (HTTP), parse, text, language, dedupe; when to poll next
(schedule), and OPML in and out. Pure, or HTTP only: nothing here reads the clock or the
database."""
