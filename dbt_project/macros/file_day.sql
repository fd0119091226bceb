{#- The day a CDR file covers, from the YYYYMMDD stamp in its name (NULL when absent). -#}
{% macro file_day(path_column) -%}
    {%- if target.type == 'duckdb' -%}
    try_strptime(nullif(regexp_extract({{ path_column }}, '(20[0-9]{6})', 1), ''), '%Y%m%d')::date
    {%- else -%}
    to_date(substring({{ path_column }} from '(20[0-9]{6})'), 'YYYYMMDD')
    {%- endif -%}
{%- endmacro %}
