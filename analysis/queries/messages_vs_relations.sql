-- How much of each run's talk travels along relationship edges.
SELECT run_id, messages, distinct_pairs, along_relations, share_along_relations
FROM v_message_edges ORDER BY run_id;
