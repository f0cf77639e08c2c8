-- SearchCalls: the words of stored (redacted) finals, indexed as written
-- ('simple': no stemming or stop words, so a phrase matches as said), and
-- the alerts of a rule.
CREATE INDEX transcript_words ON transcript USING GIN (to_tsvector('simple', text));
CREATE INDEX feed_rule ON feed (rule_id, call_id) WHERE kind = 'alert';
