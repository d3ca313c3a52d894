"""listener: social listening for brand, PR, HR and customer-service teams."""

__version__ = "0.1.0"
