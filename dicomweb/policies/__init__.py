"""Who may see what (issue 6): identities, role rules and grants, decisions, de-identification."""
