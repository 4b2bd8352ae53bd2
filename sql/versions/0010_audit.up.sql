-- 0010 audit: (filled by its issue's work)
SELECT 1;
