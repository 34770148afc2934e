"""LayerLab's core: data, network specs, training, the run store and the job service.

Everything here is importable and testable without Streamlit; the pages in `pages/` only
read widgets, call these modules and draw what comes back.
"""
