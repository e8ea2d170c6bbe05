"""Keras graph transforms, each Model -> Model: pruning, decomposition, graph optimization, and the
one graph utility they share (:mod:`tinyopt.transforms.keras_graph`).
"""
