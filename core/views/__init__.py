"""Views: the page logic that needs no Streamlit — the Build page's working copy, the Train
form, run tables and progress, Plotly figures and translations.
"""
