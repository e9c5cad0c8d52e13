"""The edge predictor: a Flask application served by waitress."""
