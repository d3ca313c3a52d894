"""The business-function classifier: the model (`model`) and its offline training (`training`).

Nothing is imported here: the model's imports (scikit-learn, skops) are heavy, so each caller
imports the module it needs when it needs it.
"""
