"""Front: datasets, model builders, training (Keras model in).
"""
