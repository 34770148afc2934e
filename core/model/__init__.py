"""The model: the layer vocabulary and structural checks (`vocabulary`, no torch) and the
shape-checked builder that turns a spec into `nn.Sequential` (`network`).
"""
