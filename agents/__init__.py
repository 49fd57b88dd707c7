"""Agents: the model seam (endpoints, structured output, retries, cache), prompts and the offline engine."""

if __name__ == "agents":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'agents' (this folder is personahub.agents)", name="agents")
