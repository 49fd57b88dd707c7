"""Analysis: SQL views, ready queries, export and reports over the run log."""

if __name__ == "analysis":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'analysis' (this folder is personahub.analysis)", name="analysis")
