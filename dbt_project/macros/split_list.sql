{#- The items of a comma-separated text column, one row each (used in a lateral select). -#}
{% macro split_list(column) -%}
    {%- if target.type == 'duckdb' -%}
    unnest(string_split({{ column }}, ','))
    {%- else -%}
    unnest(string_to_array({{ column }}, ','))
    {%- endif -%}
{%- endmacro %}
