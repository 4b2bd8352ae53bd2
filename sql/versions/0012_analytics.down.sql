-- 0012 analytics, undone: the rollup tables go (the views over them, in analytics/*.sql,
-- go with them: CASCADE; the next migrate re-creates what its files declare).
DROP TABLE analytics.activity_daily CASCADE;
DROP TABLE analytics.usage_monthly CASCADE;
DROP TABLE analytics.usage_daily CASCADE;
