// Writes Parse Server's configuration for the comparison (scripts/bench-compare.sh) as JSON on
// stdout, from the environment the script sets.
'use strict';
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const config = {
  appId: 'roster-bench',
  masterKey: env('PARSE_MASTER_KEY'),
  restAPIKey: 'bench-rest',
  databaseURI: env('PARSE_DATABASE_URI'),
  port: Number(env('PARSE_PORT')),
  mountPath: '/parse',
  serverURL: `http://127.0.0.1:${env('PARSE_PORT')}/parse`,
  logLevel: 'error',
  verbose: false,
  // Parse writes its log files under ./logs of its working directory unless told otherwise.
  logsFolder: env('PARSE_LOGS'),
  // No cluster: one node process, as the Parse documentation's quick start runs it.
  push: {
    // Parse's default queue: batches of 1000 installations per push work item.
    queueOptions: { batchSize: 1000 },
    ios: {
      token: { key: env('APNS_KEY_FILE'), keyId: 'FGHIJ67890', teamId: 'ABCDE12345' },
      topic: 'com.example.roster',
      production: false,
      // @parse/node-apn connects to https://<address>; node's HTTP/2 client takes the port
      // from the options it is handed, so both are set.
      address: env('APNS_ADDRESS').split(':')[0],
      port: Number(env('APNS_ADDRESS').split(':')[1]),
    },
  },
};
process.stdout.write(JSON.stringify(config, null, 2) + '\n');
