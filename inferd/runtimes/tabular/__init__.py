"""scikit-learn, XGBoost and LightGBM models: converted to ONNX at load when that is safe, else native."""
