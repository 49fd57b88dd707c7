"""Scenarios: the shipped scenario scripts and their worlds."""

if __name__ == "scenarios":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'scenarios' (this folder is personahub.scenarios)", name="scenarios")
