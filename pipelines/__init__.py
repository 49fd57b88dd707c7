"""Job pipelines on the kernel: synthesis, the judge and interviews."""


if __name__ == "pipelines":  # the repository root is on sys.path: this folder is not a top-level package
    raise ModuleNotFoundError(
        "No module named 'pipelines' (this folder is personahub.pipelines)", name="pipelines")
