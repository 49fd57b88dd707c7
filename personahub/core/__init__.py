"""The core every package may import: contracts, errors, the database, the job kernel, the event loop.

Imports nothing else of the project.
"""
