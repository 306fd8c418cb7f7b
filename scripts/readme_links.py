#!/usr/bin/env python
"""Rewrite README's Binder and Colab links from ``tlkit/links.py`` (after changing REPOSITORY)."""
import re
from pathlib import Path

from tlkit import links

readme = Path(__file__).resolve().parents[1] / "README.md"
text = readme.read_text()
text = re.sub(r"https://mybinder\.org/v2/gh/[^)\s]+", links.binder_url(), text)
text = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]+/notebooks/([\w.]+)",
              lambda m: links.colab_url(m.group(1)), text)
text = re.sub(r'REPOSITORY = "[^"]+"', f'REPOSITORY = "{links.REPOSITORY}"', text)
readme.write_text(text)
print("README links now point at", links.repo_url())
