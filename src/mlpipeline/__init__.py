"""mlpipeline: config-driven ML pipelines as KFP components, served with KServe, watched with Prometheus.

Importing this package is cheap: it pulls in neither kfp, kserve, torch nor sklearn.
"""

__version__ = "0.1.0"
