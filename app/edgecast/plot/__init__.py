"""PNG charts of forecasts for people who would rather look than read (``edgecast plot``).

``chart`` is the only module that imports matplotlib, and nothing imports it at start-up, so
``edgecast serve`` and the predictor never load it. ``heldout`` and ``request`` compute what is
drawn with the code that trains, evaluates and serves; they need no matplotlib.
"""
