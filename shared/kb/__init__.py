"""Knowledge-base sync (Smart DB / MindsDB-compatible): source databases, knowledge bases
and the jobs that sync one into the other. This first part: source databases."""
