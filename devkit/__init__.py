"""Development tooling above both ``shardproxy`` and ``embed``: real server processes on one machine
(``procs``), the embedded dev cluster (``devcluster``), ``make demo`` (``demo``) and the
``shardproxy dev`` commands (``cli``, registered through the ``shardproxy.commands`` entry point).
``shardproxy``'s and ``embed``'s own modules never import this package."""
