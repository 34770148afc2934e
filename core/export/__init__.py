"""Taking a run out of LayerLab: its weights with their spec, ONNX, and a PyTorch file that runs without LayerLab.

`files` decides which runs can be exported and writes each format; `source` writes the
PyTorch file's Python. The printable run report is a view (`core.views.report`). Nothing here
trains or shows anything.
"""
