"""One module per console page (or small group of actions on one thing); each renders its
template under ``templates/pages/``."""
