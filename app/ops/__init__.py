"""Operations: logging and Prometheus metrics."""
