"""The daily digest, pure: when it is due (`periods`), what it contains (`build`, and
`watches` for the watch sections and share of voice), as the values of `model`."""
