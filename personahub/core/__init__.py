"""The core every package may import: contracts, errors, the database and its schema, the job
kernel, the event loop, interrupts and output guards. Imports nothing else of the project."""
