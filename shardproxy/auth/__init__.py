"""Authentication, Milvus's role-based access control, TLS, rate limits and the audit log of
the proxy. The decision logic (:mod:`rpc_table`, :mod:`privileges`, :mod:`limits`) is pure;
:mod:`interceptor` applies it to every call; :mod:`store` keeps the catalog in Redis."""
