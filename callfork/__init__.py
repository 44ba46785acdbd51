"""callfork: the composition root above the layers. It wires the ESL layer (esl_app), the verbs, the
audio relay (audio_fork), the webhooks and the records into the running service (`service.py`,
with the HTTP API of `http_api.py` and what verbs use per call, `verb_services.py`), and holds the
command line (`cli.py`, the `callfork` entry point, which patches for gevent), the demo and its
sample app, the ops commands and the media cache. Nothing below imports this package.
"""
