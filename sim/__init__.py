"""Simulation: the scenario contract, the Mesa society model, the runner, the run log and the executors."""

if __name__ == "sim":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'sim' (this folder is personahub.sim)", name="sim")
