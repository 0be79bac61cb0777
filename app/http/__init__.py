"""The HTTP layer: routes, the handlers and their guard, the stream endpoint, schemas and the OpenAPI document."""
