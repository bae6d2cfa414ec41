"""REST front-end: a raw ASGI app translating V2 HTTP requests to data-plane calls."""
