"""Thin Milvus RPC handlers, one mixin class per concern, composed by
:class:`shardproxy.servicer.MilvusProxyServicer`. Each handler looks up and validates, plans
with :class:`shardproxy.placement.Placement`, executes with :class:`shardproxy.scatter.Scatter`
and builds the response."""
