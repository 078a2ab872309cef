# The peer kit's WSGI app for mod_wsgi (WSGIScriptAlias); the Apache config puts the
# kit on the path (WSGIPythonPath).
from hello import app as application
