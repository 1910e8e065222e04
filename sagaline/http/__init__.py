"""HTTP: the services' shared API helpers, the bearer token and the request limits."""
