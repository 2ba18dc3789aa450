"""Data the running explorer needs: generated worlds with ground truth and packaged photos.

- :mod:`.procedural`, :mod:`.scenes`: shapes and captioned scenes (image + text, with object boxes).
- :mod:`.clips`, :mod:`.av_clips`: moving-shape clips, and clips that sound (colour = pitch).
- :mod:`.rgbd`: rooms with exact metric depth; the Middlebury motorcycle pair.
- :mod:`.photos`, :mod:`.samples`: photos that ship with scikit-image, by name.

Nothing here imports a model; training scripts (:mod:`explorer.training`) and apps read from here.
"""
