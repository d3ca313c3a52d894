"""The jobs: the wiring between the pure packages and the store, one module per job
(`poll`, `watches`, `digest`, `alerts`), with the exactly-once sending they share and the
classifier's wiring (`classify`). Every job the daemon runs is `job(services, now)`
(`services.Job`); the command line runs the same functions once."""
