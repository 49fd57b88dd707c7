"""The loopback OpenAI-compatible server: the offline engine over HTTP, with the dialects of real
servers and fault injection, for tests and dry runs.
"""
