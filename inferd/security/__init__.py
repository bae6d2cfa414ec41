"""Authentication, authorization, rate limits, TLS and audit: what the front-ends call before serving."""
