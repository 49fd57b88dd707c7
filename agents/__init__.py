"""Agents: the persona agent's LangGraph graph, the deliberate policy's decision, and the prompts."""

if __name__ == "agents":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'agents' (this folder is personahub.agents)", name="agents")
