"""The command-line interface (and, later, the HTTP service) of ownrank."""
