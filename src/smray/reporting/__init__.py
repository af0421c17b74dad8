"""Pictures and pages a person looks at: evaluation plots and reports."""
