"""Validation of accounts and order lines, vectorized: one mask per rule, first rule wins.

Reason codes (the `reason` of a rejected order line):
malformed_record, duplicate_order_id, unknown_account, card_number_in_input (the account's
input carried a card number), missing_payment_method, invalid_payment_method,
invalid_card_details, invalid_mandate (a SEPA mandate with a bad IBAN, id, date or BIC),
invalid_vat_id (a VAT id failing its country's check digits or format, python-stdnum),
expired_card, invalid_country, invalid_address, unknown_product,
unknown_plan, plan_not_offered, quantity_out_of_range, feature_not_offered.
Timeline rules (disconnect_not_active, change_plan_not_active, no_active_service,
area_exhausted, number_unavailable, activation_failed) are decided by provisioning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from squak_pipelines import clock
from squak_pipelines.orders.catalogue import Catalogue, iso_countries
from squak_pipelines.payments.direct_debit import mandate_problem
from squak_pipelines.tax_ids import vat_problem

KINDS = ("new", "add_on", "change_plan", "disconnect")
PAYMENT_METHODS = ("card", "ach", "invoice")


def _ts(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.where(values != ""), utc=True, errors="coerce", format="ISO8601")


def validate_accounts(accounts: pd.DataFrame) -> pd.DataFrame:
    """Accounts with a `billing_issue` column (None when billing info is usable)."""
    a = accounts.copy()
    countries = iso_countries()
    expiry = a["card_expiry"].str.fullmatch(r"(0[1-9]|1[0-2])/20\d\d")
    conditions = [
        a["payment_method"] == "",
        ~a["payment_method"].isin(PAYMENT_METHODS),
        (a["payment_method"] == "card") & ((a["card_token"] == "") | ~a["card_last4"].str.fullmatch(r"\d{4}")
                                           | ~expiry),
        ~a["country"].isin(countries),
        (a["street"] == "") | (a["city"] == "") | (a["postal_code"] == ""),
    ]
    reasons = ["missing_payment_method", "invalid_payment_method", "invalid_card_details",
               "invalid_country", "invalid_address"]
    issue = pd.Series(np.select(conditions, reasons, default=""), index=a.index)
    issue = issue.where(issue != "", _mandate_issues(a))
    issue = issue.where(issue != "", _vat_issues(a))
    a["billing_issue"] = issue.replace("", None)
    return a


def _vat_issues(a: pd.DataFrame) -> pd.Series:
    """`invalid_vat_id: <why>` for accounts whose VAT id is given but not valid; else ''."""
    vat = a.reindex(columns=["vat_id"])["vat_id"].fillna("").astype(str)
    problems = pd.Series("", index=a.index, dtype=object)
    for idx in a.index[vat != ""]:  # accounts, not CDRs: a handful per drop
        problem = vat_problem(vat[idx], str(a.at[idx, "country"]))
        problems[idx] = f"invalid_vat_id: vat_id: {problem}" if problem else ""
    return problems


def _mandate_issues(a: pd.DataFrame) -> pd.Series:
    """`invalid_mandate: <field>: <why>` for bank-paying accounts whose SEPA mandate fields are
    given but unusable (IBAN check digits, mandate id, date of signature, BIC); else ''."""
    columns = ("iban", "mandate_id", "mandate_date", "bic")
    fields = a.reindex(columns=list(columns)).fillna("").astype(str)
    stated = (fields[["iban", "mandate_id", "mandate_date"]] != "").any(axis=1)
    given = (a["payment_method"] == "ach") & stated
    today = clock.today()
    problems = pd.Series("", index=a.index)
    for idx in a.index[given]:  # accounts, not CDRs: a handful per drop
        row = fields.loc[idx]
        problem = mandate_problem(row["iban"], row["mandate_id"], row["mandate_date"], row["bic"], today)
        problems[idx] = f"invalid_mandate: {problem}" if problem else ""
    return problems


def validate_lines(lines: pd.DataFrame, accounts: pd.DataFrame, rejected_accounts: dict[str, str],
                   catalogue: Catalogue, seen_keys: set[tuple[str, str]]) -> pd.DataFrame:
    """Order lines with `reason`/`field`/`message` set for the rejected ones (None if valid),
    plus parsed `effective_ts` and `qty`."""
    v = lines.copy()
    v["effective_ts"] = _ts(v["effective_at"])
    v["qty"] = pd.to_numeric(v["quantity"].replace("", "1"), errors="coerce")
    acct = accounts.set_index("account_id") if len(accounts) else pd.DataFrame(
        columns=["billing_issue", "card_expiry", "payment_method"])
    prod = catalogue.products.set_index("product_id")
    known_account = v["account_id"].isin(acct.index)
    billing = v["account_id"].map(acct["billing_issue"]).fillna("").astype(str)
    expiry_end = pd.to_datetime("01/" + v["account_id"].map(acct["card_expiry"]).fillna(""),
                                format="%d/%m/%Y", errors="coerce", utc=True) + pd.DateOffset(months=1)
    is_card = v["account_id"].map(acct["payment_method"]).fillna("") == "card"
    sells = v["kind"].isin(["new", "add_on"])
    needs_plan = v["kind"].isin(["new", "add_on", "change_plan"])
    allowed_plans = v["product_id"].map(prod["plans"]).fillna("").astype(str)
    plan_allowed = pd.Series([p in a.split(";") for p, a in zip(v["plan_id"], allowed_plans, strict=True)],
                             index=v.index, dtype=bool)
    offered = v["product_id"].map(prod["features"]).fillna("").astype(str)
    features_ok = pd.Series([not f or set(_split(f)) <= set(_split(o))
                             for f, o in zip(v["features"], offered, strict=True)], index=v.index, dtype=bool)
    key = list(zip(v["order_id"], v["line_no"], strict=True))
    duplicate = (pd.Series([k in seen_keys for k in key], index=v.index)
                 | pd.Series(key, index=v.index).duplicated())
    in_range = (v["qty"] >= v["product_id"].map(prod["min_quantity"])) & \
               (v["qty"] <= v["product_id"].map(prod["max_quantity"]))

    rules: list[tuple[pd.Series, str, str, str]] = [
        ((v["order_id"] == "") | (v["line_no"] == ""), "malformed_record", "order_id",
         "order id and line number are required"),
        (~v["kind"].isin(KINDS), "malformed_record", "kind", f"kind must be one of {', '.join(KINDS)}"),
        (v["effective_ts"].isna(), "malformed_record", "effective_at", "not an ISO 8601 timestamp"),
        (v["qty"].isna() | (v["qty"] % 1 != 0), "malformed_record", "quantity", "not a whole number"),
        (v["kind"].isin(["disconnect", "change_plan"]) & (v["phone_number"] == ""),
         "malformed_record", "phone_number", "disconnect and plan change name the phone number"),
        (duplicate, "duplicate_order_id", "order_id", "this order id and line were already received"),
        (v["account_id"].isin(list(rejected_accounts)), "account_rejected", "account_id",
         "the account record was rejected"),
        (~known_account, "unknown_account", "account_id", "no such account"),
        (billing != "", "billing_issue", "account_id", "the account's billing information is unusable"),
        (sells & is_card & (expiry_end <= v["effective_ts"]), "expired_card", "card_expiry",
         "the card on file expires before the order takes effect"),
        (~v["product_id"].isin(prod.index), "unknown_product", "product_id", "not in the product catalogue"),
        (needs_plan & ~v["plan_id"].isin(catalogue.plan_ids), "unknown_plan", "plan_id", "no such rate plan"),
        (needs_plan & ~plan_allowed, "plan_not_offered", "plan_id", "the product is not sold on this plan"),
        (sells & ~in_range, "quantity_out_of_range", "quantity", "quantity outside the product's limits"),
        (sells & ~features_ok, "feature_not_offered", "features", "the product does not offer this feature"),
    ]
    reason = np.select([r[0].fillna(False).astype(bool) for r in rules], [r[1] for r in rules], default="")
    field = np.select([r[0].fillna(False).astype(bool) for r in rules], [r[2] for r in rules], default="")
    message = np.select([r[0].fillna(False).astype(bool) for r in rules], [r[3] for r in rules], default="")
    v["reason"] = pd.Series(reason, index=v.index).replace("", None)
    v["field"] = pd.Series(field, index=v.index).replace("", None)
    v["message"] = pd.Series(message, index=v.index).replace("", None)
    # Account-level reasons become the line's reason code.
    from_account = v["reason"] == "account_rejected"
    v.loc[from_account, "reason"] = v.loc[from_account, "account_id"].map(rejected_accounts)
    v.loc[from_account, "message"] = ("account " + v.loc[from_account, "account_id"]
                                      + " was rejected at intake: " + v.loc[from_account, "reason"])
    from_billing = v["reason"] == "billing_issue"
    v.loc[from_billing, "reason"] = billing[from_billing].str.split(":").str[0]
    v.loc[from_billing, "message"] = ("account " + v.loc[from_billing, "account_id"]
                                      + " has unusable billing information: " + billing[from_billing])
    return v


def _split(text: str) -> list[str]:
    return [t.strip().lower() for t in text.replace(",", ";").split(";") if t.strip()]
