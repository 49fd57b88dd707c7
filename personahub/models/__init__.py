"""The model seam: endpoints (HTTP, offline), the wrappers around them (validate, cache, retry,
limits, failover, accounting), structured output and its bounds, and the offline engine."""
