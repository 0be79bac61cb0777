"""The HTTP layer: routes, handlers, the stream endpoint, middlewares, schemas and the OpenAPI document."""
