# Sphinx configuration for the lmtrain docs site. The pages are nbdev-processed notebooks
# (see scripts/build_docs.py), rendered with their saved outputs by myst-nb; nothing is executed here.
project = "lmtrain"
author = "lmtrain developers"
copyright = "2026 onwards, lmtrain developers"
extensions = ["myst_nb"]
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "attrs_inline"]
myst_heading_anchors = 3
html_theme = "furo"
html_title = "lmtrain"
html_static_path = ["_static"]
# MathJax from a local copy (the PyPI package django-static-mathjax): the site works offline.
mathjax_path = "mathjax/tex-mml-chtml.js"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "conf.py"]
# `show_doc` titles are always H3, whatever the heading level of the lesson around them.
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
master_doc = "index"
html_favicon = "_static/favicon.svg"
# Live widgets need a kernel and the widget state, which clean notebooks do not keep: pages show the
# static HTML view that every lmtrain widget also renders (`_repr_html_`).
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/vnd.jupyter.widget-state+json", None)]

