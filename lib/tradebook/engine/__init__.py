"""Running notebooks: ``runner.run_phase`` is the one entry point; kernels, the fork
server and the papermill engine serve it.
"""
