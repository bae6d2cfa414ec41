"""OpenTelemetry tracing (the optional ``tracing`` extra); nothing here is imported when it is off."""
