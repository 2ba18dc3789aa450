"""App-mode notebooks (notebooks/apps/*.ipynb): one app each, shown on the offline mini models, nothing else.

Voilà (`make app APP=<name>`, or `.venv/bin/voila notebooks/apps/<name>.ipynb`) runs one of them and shows the title
and the app, without the code.  Written by tools/build_notebooks.py; the cells stay here as plain text.
"""

#: app name (the notebook's file name and `make app APP=...`) -> (title, the app's code)
APPS = {
    "mae": ("Masked autoencoder: reconstruction", """
import explorer

app = explorer.MAEApp(model="mini-mae", image="chelsea", ratio=0.75)
app
"""),
    "attention": ("Attention maps of a vision transformer", """
import explorer

app = explorer.AttentionApp(model="mini-mae", image="coffee")
app
"""),
    "alignment": ("Cross-modal alignment: which patches a word points to", """
import explorer

app = explorer.FusionApp(model="mini-fusion", image="scene:10000011")
app
"""),
    "video": ("Video masked autoencoder: tube masking", """
import explorer

app = explorer.VideoMAEApp(model="mini-video-mae", clip="generated:10000011", ratio=0.9)
app
"""),
    "rgbd": ("RGB-D masked autoencoder: colour and depth", """
import explorer

app = explorer.MultiMAEApp("mini-rgbd-mae", "room:10000004", budgets={"rgb": 1.0, "depth": 0.1})
app
"""),
    "audio_visual": ("Audio-visual masked autoencoder: frames and sound", """
import explorer

app = explorer.MultiMAEApp("mini-av-mae", budgets={"video": 1.0, "audio": 0.0})
app
"""),
    "uniformer": ("UniFormer: local relations in the shallow stages, global attention in the deep ones", """
import explorer

app = explorer.UniFormerApp("mini-uniformer")
app
"""),
}


def app_cells(name: str) -> list[tuple[str, str]]:
    """The cells of ``notebooks/apps/<name>.ipynb``: a one-line title, then the app."""
    title, code = APPS[name]
    return [("md", f"# {title}"), ("code", code)]
