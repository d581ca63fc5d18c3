"use client";
/**
 * A Next.js (app router) page: the organization's jobs, and the selected one live. The API
 * token comes from wherever the app keeps it (here NEXT_PUBLIC_BRIGHTRUN_TOKEN); with the
 * dashboard's session cookie, leave it out (the API's origin must be in FRONTEND_ORIGINS).
 */
import { useEffect, useState } from "react";

import { ApiError, createBrightRunClient, type Job, type LiveMessage } from "@brightrun/api-client";

declare const process: { env: Record<string, string | undefined> };

const api = createBrightRunClient({
  baseUrl: process.env.NEXT_PUBLIC_BRIGHTRUN_API ?? "",
  token: process.env.NEXT_PUBLIC_BRIGHTRUN_TOKEN,
});

export default function JobsPage() {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [watched, setWatched] = useState<string | null>(null);
  const [live, setLive] = useState<{ step: number; loss: number | null; status: string } | null>(null);

  useEffect(() => {
    api.all("/api/v1/jobs/", { query: { ordering: "-created_at" } })
      .then(setJobs)
      .catch((e: unknown) => setError(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)));
  }, []);

  useEffect(() => {
    if (!watched) return;
    let close = () => {};
    api.watchJob(watched, (message: LiveMessage) => {
      if (message.kind === "snapshot") {
        const job = message.job as { status: string; step: number; loss?: number | null };
        setLive({ status: job.status, step: job.step, loss: job.loss ?? null });
      } else if (message.kind === "metrics") {
        const points = (message.points as { step: number; loss?: number }[] | undefined) ?? [];
        const last = points[points.length - 1];
        if (last) setLive((prev) => ({ status: prev?.status ?? "training", step: last.step, loss: last.loss ?? null }));
      } else if (message.kind === "status") {
        setLive((prev) => ({ step: prev?.step ?? 0, loss: prev?.loss ?? null, status: String(message.status) }));
      }
    }).then((connection) => { close = connection.close; })
      .catch((e: unknown) => setError(String(e)));
    return () => close();
  }, [watched]);

  return (
    <main>
      <h1>Training jobs</h1>
      {error && <p role="alert">{error}</p>}
      <table>
        <thead><tr><th>Name</th><th>Status</th><th>Progress</th><th>Loss</th></tr></thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.id} onClick={() => setWatched(job.id)}>
              <td>{job.name}</td>
              <td>{job.status}</td>
              <td>{Math.round(job.progress * 100)}%</td>
              <td>{job.last_loss?.toFixed(3) ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {watched && live && (
        <p>Job {watched}: {live.status}, step {live.step}, loss {live.loss?.toFixed(4) ?? "–"}</p>
      )}
    </main>
  );
}
